#if canImport(Glibc)
    import Glibc
#endif

/// What a tree holds on disk: allocated bytes (`st_blocks * 512`, what the filesystem really lost,
/// not the apparent size a sparse file claims) and inodes (files, directories, symlinks, ...).
public struct DiskUsage: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Allocated bytes.
    public var bytes: Int64
    /// Inodes.
    public var files: Int64

    /// Creates a usage (or a quota: the same two numbers).
    public init(bytes: Int64, files: Int64) {
        self.bytes = bytes
        self.files = files
    }

    /// Nothing.
    public static let zero = DiskUsage(bytes: 0, files: 0)

    /// Component-wise sum.
    public static func + (lhs: DiskUsage, rhs: DiskUsage) -> DiskUsage {
        DiskUsage(bytes: lhs.bytes + rhs.bytes, files: lhs.files + rhs.files)
    }

    /// Component-wise difference.
    public static func - (lhs: DiskUsage, rhs: DiskUsage) -> DiskUsage {
        DiskUsage(bytes: lhs.bytes - rhs.bytes, files: lhs.files - rhs.files)
    }

    /// Each component at least zero.
    var clamped: DiskUsage { DiskUsage(bytes: max(0, bytes), files: max(0, files)) }

    /// `12.0 MiB in 34 files`.
    public var description: String {
        "\(Self.mebibytes(bytes)) in \(files) file\(files == 1 ? "" : "s")"
    }

    static func mebibytes(_ bytes: Int64) -> String {
        let tenths = (bytes * 10 + (1 << 20) / 2) >> 20
        return "\(tenths / 10).\(tenths % 10) MiB"
    }

    enum CodingKeys: String, CodingKey { case bytes, files }
}

/// One walk of a tree.
public struct DiskMeasurement: Sendable, Equatable {
    /// What the walk counted. When ``incomplete`` is set this is a lower bound.
    public var usage: DiskUsage
    /// Why the walk stopped before the end (nil: it saw the whole tree).
    public var incomplete: Incomplete?
    /// The device of the tree's root (`st_dev`): whether it shares a filesystem with the audit log.
    public var device: UInt64

    /// Why a walk did not see the whole tree. Every reason is treated as over quota: a tenant
    /// cannot hide bytes from the walk (an unreadable or very deep directory) and keep growing.
    public enum Incomplete: String, Sendable, Equatable {
        /// The walk passed the bound it was given (more than any quota allows): over quota.
        case overBound = "over_bound"
        /// Directories nested deeper than ``DiskWalk/maximumDepth``.
        case tooDeep = "too_deep"
        /// A directory the runner cannot open or read.
        case unreadable
    }
}

/// Measures a workspace tree without following a symlink, leaving the root's filesystem or
/// leaving the root: `openat`/`fstatat(AT_SYMLINK_NOFOLLOW)` relative to directory descriptors,
/// every directory opened with `O_NOFOLLOW` and checked to be on the root's device. An inode with
/// several hard links in the tree is counted once. Work is bounded: the walk stops once it has
/// counted more than `bound` (in either bytes or inodes), and it holds at most
/// ``maximumDepth`` directory descriptors.
///
/// Blocking syscalls, run on the caller's thread: a walk of a workspace at its default file quota
/// (500,000 inodes) takes a fraction of a second on a warm dentry cache.
public enum DiskWalk {
    /// Deeper directories are not walked; the tree is then reported ``DiskMeasurement/Incomplete/tooDeep``.
    public static let maximumDepth = 128

    /// The error of a root that cannot be opened at all (removed, or not a directory).
    public struct RootUnavailable: Error, Sendable, CustomStringConvertible {
        /// The root.
        public let root: String
        /// `errno` of the failed `open`.
        public let errno: Int32
        /// `cannot open ROOT: No such file or directory`.
        public var description: String { "cannot open \(root): \(String(cString: strerror(errno)))" }
    }

    /// Walks `root`.
    public static func measure(root: String, bound: DiskUsage) throws(RootUnavailable) -> DiskMeasurement {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw RootUnavailable(root: root, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw RootUnavailable(root: root, errno: errno) }
        var walk = Walk(device: st.st_dev, bound: bound)
        walk.count(st)
        if walk.incomplete == nil { walk.directory(fd, depth: 1) }
        return DiskMeasurement(usage: walk.usage, incomplete: walk.incomplete, device: UInt64(st.st_dev))
    }

    private struct Walk {
        let device: dev_t
        let bound: DiskUsage
        var usage = DiskUsage.zero
        var incomplete: DiskMeasurement.Incomplete?
        /// Inodes with more than one link already counted.
        var linked = Set<Inode>()

        struct Inode: Hashable {
            let device: UInt64
            let inode: UInt64
        }

        init(device: dev_t, bound: DiskUsage) {
            self.device = device
            self.bound = bound
        }

        mutating func count(_ st: stat) {
            let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
            if !isDirectory && st.st_nlink > 1 {
                guard linked.insert(Inode(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))).inserted else { return }
            }
            usage.bytes += Int64(st.st_blocks) * 512
            usage.files += 1
            if usage.bytes > bound.bytes || usage.files > bound.files { incomplete = .overBound }
        }

        /// Counts the entries of the open directory `fd` and walks its subdirectories.
        mutating func directory(_ fd: Int32, depth: Int) {
            // readdir gets its own descriptor (closedir closes it); `fd` stays for fstatat/openat.
            let listing = dup(fd)
            guard listing >= 0, let stream = fdopendir(listing) else {
                if listing >= 0 { close(listing) }
                incomplete = incomplete ?? .unreadable
                return
            }
            var subdirectories: [String] = []
            while incomplete == nil {
                errno = 0
                guard let entry = readdir(stream) else {
                    if errno != 0 { incomplete = .unreadable }
                    break
                }
                let name = withUnsafePointer(to: entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }
                }
                if name == "." || name == ".." { continue }
                var st = stat()
                // Gone since readdir (the tree is live): nothing to count.
                guard fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
                count(st)
                // Another filesystem mounted inside (not something a tenant can do on the host):
                // its mount point is counted, its contents are not ours to walk.
                if (st.st_mode & S_IFMT) == S_IFDIR && st.st_dev == device { subdirectories.append(name) }
            }
            closedir(stream)
            for name in subdirectories where incomplete == nil {
                guard depth < DiskWalk.maximumDepth else {
                    incomplete = .tooDeep
                    return
                }
                let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else {
                    // Removed or replaced (by a symlink, a file) since it was counted: skip it.
                    if errno == ENOENT || errno == ELOOP || errno == ENOTDIR { continue }
                    incomplete = .unreadable
                    return
                }
                var st = stat()
                if fstat(child, &st) == 0 && st.st_dev == device {
                    directory(child, depth: depth + 1)
                }
                close(child)
            }
        }
    }
}
