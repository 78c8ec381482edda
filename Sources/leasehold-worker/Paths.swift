import CWorker

#if canImport(Glibc)
    import Glibc
#endif

/// Every path of every tool is resolved here, by the kernel: openat2 relative to the workspace
/// descriptor with RESOLVE_BENEATH (no `..` above the root, no absolute paths or absolute symlinks)
/// and RESOLVE_NO_MAGICLINKS (no /proc/*/fd or /proc/*/root jumps). The worker never builds an
/// absolute path and never resolves a path string itself.
enum Paths {
    /// The resolve flags every lookup uses.
    static let beneath = UInt64(CSBW_RESOLVE_BENEATH) | UInt64(CSBW_RESOLVE_NO_MAGICLINKS)
    /// For single components read from a directory: additionally no symlink at all.
    static let beneathNoSymlinks = beneath | UInt64(CSBW_RESOLVE_NO_SYMLINKS)
    /// O_PATH (a GNU macro Swift cannot see).
    static let oPath = Int32(CSBW_O_PATH)
    /// Longest path the kernel accepts (PATH_MAX, counting the NUL).
    static let maximumPathBytes = 4095

    /// Validates a caller's relative path before any C call sees it: a NUL byte would truncate it
    /// in C, so it is refused here. Empty means the workspace root.
    static func check(_ path: String, name: String = "path") throws(ToolError) -> String {
        if path.utf8.contains(0) {
            throw ToolError.invalidArguments("argument '\(name)' contains a NUL byte")
        }
        if path.utf8.count > maximumPathBytes {
            throw ToolError(.pathTooLong, "argument '\(name)' is longer than \(maximumPathBytes) bytes")
        }
        return path.isEmpty ? "." : path
    }

    /// openat2 beneath `dirfd`; returns the descriptor or throws the mapped error for `shown`.
    static func open(
        _ dirfd: Int32, _ path: String, flags: Int32, mode: UInt32 = 0, resolve: UInt64 = beneath,
        shown: String? = nil, action: String = "open"
    ) throws(ToolError) -> Int32 {
        let fd = csbw_openat2(dirfd, path, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), UInt64(mode), resolve)
        if fd < 0 { throw ToolError.forPath(shown ?? path, errno: -fd, action: action) }
        return fd
    }

    /// openat2 returning -errno instead of throwing (for walks that skip what they cannot open).
    static func tryOpen(_ dirfd: Int32, _ path: String, flags: Int32, resolve: UInt64 = beneath) -> Int32 {
        csbw_openat2(dirfd, path, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), 0, resolve)
    }

    /// fstat that cannot fail silently.
    static func fstatChecked(_ fd: Int32, _ shown: String) throws(ToolError) -> stat {
        var st = stat()
        if fstat(fd, &st) != 0 { throw ToolError.forPath(shown, errno: errno, action: "stat") }
        return st
    }

    /// Opens a regular file for reading. O_NONBLOCK and O_NOCTTY so a FIFO or a terminal can never
    /// hang the worker or become its controlling terminal; the file is looked at through an O_PATH
    /// descriptor first so a device node is never opened at all.
    static func openRegularForReading(_ workspace: Int32, _ path: String) throws(ToolError) -> (fd: Int32, st: stat) {
        let probe = try open(workspace, path, flags: oPath)
        let before: stat
        do throws(ToolError) {
            before = try fstatChecked(probe, path)
        } catch {
            close(probe)
            throw error
        }
        close(probe)
        try requireRegularSingleLink(before, path)
        let fd = try open(workspace, path, flags: O_RDONLY | O_NONBLOCK | O_NOCTTY)
        do throws(ToolError) {
            let st = try fstatChecked(fd, path)
            try requireRegularSingleLink(st, path)
            // Same object as the one probed: a swap between the two opens is refused, not followed.
            guard st.st_dev == before.st_dev, st.st_ino == before.st_ino else {
                throw ToolError(.changedDuringRead, "path \(ToolError.quoted(path)) changed while it was opened")
            }
            return (fd, st)
        } catch {
            close(fd)
            throw error
        }
    }

    /// Refuses anything but a regular file with exactly one name.
    static func requireRegularSingleLink(_ st: stat, _ path: String) throws(ToolError) {
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw ToolError(.isADirectory, "path \(ToolError.quoted(path)) is a directory")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw ToolError(
                .notRegularFile, "path \(ToolError.quoted(path)) is a \(FileKind(st.st_mode)), not a regular file")
        }
        guard st.st_nlink <= 1 else {
            // Another name of this inode may live outside the workspace; we cannot tell where.
            throw ToolError(
                .hardLink, "path \(ToolError.quoted(path)) has \(st.st_nlink) hard links; refused because another name may be outside the workspace")
        }
    }

    /// Splits a path into its parent directory and final component; the final component must be a
    /// real name (not empty, `.` or `..`) because it is created or replaced.
    static func splitParent(_ path: String) throws(ToolError) -> (parent: String, name: String) {
        var trimmed = Substring(path)
        while trimmed.hasSuffix("/") && trimmed.count > 1 { trimmed = trimmed.dropLast() }
        let parent: String
        let name: String
        if let slash = trimmed.lastIndex(of: "/") {
            parent = String(trimmed[..<slash])
            name = String(trimmed[trimmed.index(after: slash)...])
        } else {
            parent = "."
            name = String(trimmed)
        }
        guard !name.isEmpty, name != ".", name != ".." else {
            throw ToolError.invalidArguments("path \(ToolError.quoted(path)) does not name a file")
        }
        if parent.isEmpty {
            // "/name": absolute. Let the kernel refuse it exactly like every other absolute path.
            return ("/", name)
        }
        return (parent, name)
    }

    /// Reads a whole descriptor from offset 0 into `buffer` (grown as needed); returns the length.
    static func readAll(_ fd: Int32, into buffer: inout [UInt8], limit: Int) -> Int? {
        var length = 0
        while true {
            if length == buffer.count {
                if buffer.count >= limit { return length }
                buffer.append(contentsOf: repeatElement(0, count: min(max(buffer.count, 65536), limit - buffer.count)))
            }
            let count = buffer.withUnsafeMutableBytes { raw in
                read(fd, raw.baseAddress! + length, raw.count - length)
            }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { return length }
            length += count
        }
    }
}

/// The file types tools report.
enum FileKind: String {
    case file, dir, symlink, fifo, socket
    case charDevice = "char_device"
    case blockDevice = "block_device"
    case other

    init(_ mode: mode_t) {
        switch mode & S_IFMT {
        case S_IFREG: self = .file
        case S_IFDIR: self = .dir
        case S_IFLNK: self = .symlink
        case S_IFIFO: self = .fifo
        case S_IFSOCK: self = .socket
        case S_IFCHR: self = .charDevice
        case S_IFBLK: self = .blockDevice
        default: self = .other
        }
    }
}

/// A descriptor closed when the value goes away, for the many early exits of tools.
final class OwnedFD {
    let fd: Int32
    init(_ fd: Int32) { self.fd = fd }
    deinit { if fd >= 0 { close(fd) } }
}
