#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A file's identity on this host: its device and inode. Two paths name the same directory
/// exactly when their identities are equal, whatever the strings say (bind mounts, hard-linked
/// spellings, case, trailing components): roots are compared by identity, never by text.
public struct FileIdentity: Hashable, Sendable, CustomStringConvertible {
    /// `st_dev`.
    public var device: UInt64
    /// `st_ino`.
    public var inode: UInt64

    /// Creates an identity.
    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }

    /// `dev:ino`.
    public var description: String { "\(device):\(inode)" }
}

/// The identities of every directory on a canonical absolute path, from `/` down to the path
/// itself, read with `lstat` component by component: a symlink anywhere on the path is refused,
/// never followed.
public struct PathChain: Sendable {
    /// The path as given.
    public let path: String
    /// Identities from `/` (first) to the path (last).
    public let identities: [FileIdentity]
    /// Whether the last component is a directory.
    public let isDirectory: Bool

    /// The path's own identity.
    public var identity: FileIdentity { identities[identities.count - 1] }

    /// Why a path has no chain.
    public enum Failure: Error, Sendable, Equatable {
        /// Not absolute, not canonical, too long or holding a NUL byte.
        case notCanonical
        /// A component does not exist.
        case missing(String)
        /// A component is a symlink.
        case symlink(String)
        /// A component before the last is not a directory.
        case notADirectory(String)
    }

    /// Resolves `path`; `requireDirectory` also refuses a last component that is not a directory.
    public static func resolve(_ path: String, requireDirectory: Bool = true) -> Result<PathChain, Failure> {
        guard path.hasPrefix("/"), path.utf8.count <= 4096, !path.utf8.contains(0) else {
            return .failure(.notCanonical)
        }
        let components = path == "/" ? [] : Array(path.split(separator: "/", omittingEmptySubsequences: false).dropFirst())
        for component in components where component.isEmpty || component == "." || component == ".." {
            return .failure(.notCanonical)
        }
        var identities: [FileIdentity] = []
        var info = stat()
        guard lstat("/", &info) == 0 else { return .failure(.missing("/")) }
        identities.append(FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
        var isDirectory = true
        var prefix = ""
        for (index, component) in components.enumerated() {
            prefix += "/" + component
            guard lstat(prefix, &info) == 0 else { return .failure(.missing(prefix)) }
            let type = info.st_mode & S_IFMT
            if type == S_IFLNK { return .failure(.symlink(prefix)) }
            isDirectory = type == S_IFDIR
            if !isDirectory && (index < components.count - 1 || requireDirectory) {
                return .failure(.notADirectory(prefix))
            }
            identities.append(FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
        }
        return .success(PathChain(path: path, identities: identities, isDirectory: isDirectory))
    }

    /// The chain of an existing path given in any form (relative, with symlinks): resolved with
    /// `realpath` first. For the runner's own files, whose spelling the operator chose.
    public static func resolveExisting(_ path: String) -> PathChain? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return try? resolve(String(cString: resolved), requireDirectory: false).get()
    }

    /// True when this path is `other` or lies beneath it.
    public func isWithin(_ other: PathChain) -> Bool {
        identities.contains(other.identity)
    }
}
