#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The host user and group that own a tenant's workspaces (and that its workers run as) when the
/// runner runs as root. Nil when the runner is unprivileged: then everything is the runner's.
public struct WorkspaceOwner: Sendable, Hashable {
    /// Host uid.
    public var uid: UInt32
    /// Host gid.
    public var gid: UInt32

    /// Creates an owner.
    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }
}

extension WorkspaceRules {
    /// Creates `<first base>/<tenant>/<workspace>` (mode 0700, owned by `owner`), or reuses it when
    /// it is left from an earlier registration of the same tenant's workspace (removed, not purged:
    /// its files are still that tenant's). Returns the root.
    public func allocate(tenantID: String, workspaceID: String, owner: WorkspaceOwner?) throws(WorkspaceError)
        -> String
    {
        guard Identifier.isValid(tenantID), Identifier.isValid(workspaceID) else {
            throw WorkspaceError(.invalidIdentifier, "tenant_id and workspace_id must be 1-64 characters of [A-Za-z0-9_-]")
        }
        guard let base = bases.first else {
            throw WorkspaceError(.noBase, "no workspace base is configured (workspace_bases in leasehold.yaml)")
        }
        let tenantDirectory = base.path + "/" + tenantID
        try Self.makeDirectory(tenantDirectory, owner: nil)
        let root = tenantDirectory + "/" + workspaceID
        try Self.makeDirectory(root, owner: owner)
        return root
    }

    /// `mkdir` with mode 0700 that accepts an existing real directory and refuses anything else
    /// (a symlink or file planted there). The new directory is chowned to `owner`.
    static func makeDirectory(_ path: String, owner: WorkspaceOwner?) throws(WorkspaceError) {
        if mkdir(path, 0o700) != 0 {
            let error = errno
            var info = stat()
            guard error == EEXIST, lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw WorkspaceError(.invalidRoot, "cannot create \(path): \(String(cString: strerror(error)))")
            }
            return
        }
        if let owner, lchown(path, owner.uid, owner.gid) != 0 {
            let error = errno
            rmdir(path)
            throw WorkspaceError(.invalidRoot, "cannot give \(path) to its tenant: \(String(cString: strerror(error)))")
        }
    }

    /// Removes a tenant's workspace directory from under a base, with everything in it. Only paths
    /// strictly inside `<base>/<tenant>/` are removed; symlinks inside are removed, never followed.
    public func purge(tenantID: String, root: String) throws(WorkspaceError) {
        try validateRoot(root, tenantID: tenantID)
        guard WorkspaceTree.remove(root) else {
            throw WorkspaceError(.invalidRoot, "cannot remove \(root): \(String(cString: strerror(errno)))")
        }
    }
}

/// Walks a directory tree through descriptors (`openat` with `O_NOFOLLOW`), so a symlink planted
/// inside is acted on itself and never followed out of the tree.
///
/// Written by hand: Foundation's enumerators follow symlinked directories on some platforms, and
/// `nftw`'s callback cannot carry the owner.
public enum WorkspaceTree {
    /// Gives every entry under `root` (and `root`) to `owner`, without following symlinks.
    public static func chown(_ root: String, to owner: WorkspaceOwner) -> Bool {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard fchown(fd, owner.uid, owner.gid) == 0 else { return false }
        return walk(fd) { parent, name, _ in
            // A file with a second name may share its inode with a file outside the tree (a hard
            // link planted on the host): it keeps its owner, and the repo tools refuse it anyway.
            var info = stat()
            guard fstatat(parent, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { return false }
            if info.st_mode & S_IFMT != S_IFDIR && info.st_nlink > 1 { return true }
            return fchownat(parent, name, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) == 0
        }
    }

    /// Removes `root` and everything beneath it.
    public static func remove(_ root: String) -> Bool {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return errno == ENOENT }
        let emptied = walk(fd, postOrder: true) { parent, name, isDirectory in
            unlinkat(parent, name, isDirectory ? AT_REMOVEDIR : 0) == 0
        }
        close(fd)
        return emptied && rmdir(root) == 0
    }

    /// Calls `visit(parent, name, isDirectory)` for every entry beneath the directory `fd`
    /// (before descending, or after when `postOrder`). Returns false when any visit failed.
    private static func walk(
        _ fd: Int32, postOrder: Bool = false, _ visit: (Int32, [CChar], Bool) -> Bool
    ) -> Bool {
        let copy = dup(fd)
        guard copy >= 0, let directory = fdopendir(copy) else {
            if copy >= 0 { close(copy) }
            return false
        }
        defer { closedir(directory) }
        // Names as raw bytes: a file name need not be UTF-8, and a decoded-and-re-encoded name
        // would name another file (or none).
        var entries: [([CChar], Bool)] = []
        while let entry = readdir(directory) {
            let name: [CChar] = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                raw.prefix(while: { $0 != 0 }).map { CChar(bitPattern: $0) } + [0]
            }
            if name == [46, 0] || name == [46, 46, 0] { continue }  // "." and ".."
            var info = stat()
            guard fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else { return false }
            entries.append((name, info.st_mode & S_IFMT == S_IFDIR))
        }
        var ok = true
        for (name, isDirectory) in entries {
            if !postOrder { ok = visit(fd, name, isDirectory) && ok }
            if isDirectory {
                let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if child >= 0 {
                    ok = walk(child, postOrder: postOrder, visit) && ok
                    close(child)
                } else {
                    ok = false
                }
            }
            if postOrder { ok = visit(fd, name, isDirectory) && ok }
        }
        return ok
    }
}
