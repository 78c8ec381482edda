import CWorker

#if canImport(Glibc)
    import Glibc
#endif

/// Atomic replacement of one file: the new content goes to a temporary file in the target's own
/// directory (same filesystem, so the rename is atomic), is fsynced, and is renamed over the
/// target. A reader sees the old file or the new one, never a torn mix.
struct StagedFile {
    /// Descriptor of the target's directory (owned by the caller's ParentDirectory).
    let dirfd: Int32
    /// The temporary file's name in that directory.
    let temporary: [CChar]
    /// The target's name in that directory.
    let name: [CChar]
    /// The caller's path, for messages.
    let shown: String

    /// Writes `bytes` to a fresh temporary file beside `name` with `mode`.
    static func stage(dirfd: Int32, name: String, bytes: [UInt8], mode: mode_t, shown: String) throws(ToolError) -> StagedFile {
        var fd: Int32 = -1
        var temporary: [CChar] = []
        for attempt in 0..<16 {
            temporary = Array(temporaryName(attempt).utf8CString)
            fd = temporary.withUnsafeBufferPointer { buffer in
                csbw_openat2(
                    dirfd, buffer.baseAddress!, UInt64(UInt32(bitPattern: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)),
                    UInt64(mode & 0o777), Paths.beneathNoSymlinks)
            }
            if fd != -EEXIST { break }
        }
        if fd < 0 { throw ToolError.forPath(shown, errno: -fd, action: "write") }
        let staged = StagedFile(dirfd: dirfd, temporary: temporary, name: Array(name.utf8CString), shown: shown)
        do throws(ToolError) {
            // The umask may have narrowed the mode given to openat2.
            _ = fchmod(fd, mode & 0o777)
            try writeAll(fd, bytes, shown)
            if fsync(fd) != 0 { throw ToolError.forPath(shown, errno: errno, action: "write") }
            if close(fd) != 0 { throw ToolError.forPath(shown, errno: errno, action: "write") }
            fd = -1
        } catch {
            if fd >= 0 { close(fd) }
            staged.discard()
            throw error
        }
        return staged
    }

    /// Renames the temporary file over the target (or, with `noReplace`, only where none exists).
    func commit(noReplace: Bool = false) throws(ToolError) {
        let rc = temporary.withUnsafeBufferPointer { from in
            name.withUnsafeBufferPointer { to in
                csbw_renameat2(dirfd, from.baseAddress!, dirfd, to.baseAddress!, noReplace ? UInt32(CSBW_RENAME_NOREPLACE) : 0)
            }
        }
        if rc != 0 {
            discard()
            throw ToolError.forPath(shown, errno: -rc, action: "write")
        }
        // Make the rename itself durable.
        _ = fsync(dirfd)
    }

    /// Removes the temporary file (the target is untouched).
    func discard() {
        _ = temporary.withUnsafeBufferPointer { unlinkat(dirfd, $0.baseAddress!, 0) }
    }

    /// A name no tool would pick, unique per worker call (O_EXCL settles any remaining clash).
    private static func temporaryName(_ attempt: Int) -> String {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return ".leasehold-\(getpid())-\(now.tv_sec)\(now.tv_nsec)-\(attempt).tmp"
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ shown: String) throws(ToolError) {
        var offset = 0
        while offset < bytes.count {
            let count = bytes.withUnsafeBytes { raw in write(fd, raw.baseAddress! + offset, raw.count - offset) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ToolError.forPath(shown, errno: errno, action: "write")
            }
            offset += count
        }
    }
}

/// The directory a written file lives in, opened beneath the workspace.
struct ParentDirectory {
    let fd: Int32
    /// Directories this call created (workspace-relative chain, innermost last), so a failed
    /// apply_patch can remove them again.
    var created: [(parent: Int32, name: String)] = []

    /// Opens `path`'s directory; with `createParents`, makes missing directories one component at
    /// a time through descriptors, never following a symlink.
    static func open(_ workspace: Int32, _ parent: String, createParents: Bool, shown: String) throws(ToolError) -> ParentDirectory {
        let flags = O_RDONLY | O_DIRECTORY
        let first = Paths.tryOpen(workspace, parent, flags: flags)
        if first >= 0 { return ParentDirectory(fd: first) }
        guard first == -ENOENT, createParents else { throw ToolError.forPath(shown, errno: -first, action: "write") }
        var current = fcntl(workspace, F_DUPFD_CLOEXEC, 0)
        var created: [(Int32, String)] = []
        for component in parent.split(separator: "/", omittingEmptySubsequences: true).map(String.init) {
            if component == "." { continue }
            var next = Paths.tryOpen(current, component, flags: flags, resolve: Paths.beneathNoSymlinks)
            if next == -ENOENT {
                if mkdirat(current, component, 0o755) == 0 {
                    created.append((fcntl(current, F_DUPFD_CLOEXEC, 0), component))
                } else if errno != EEXIST {
                    let code = errno
                    close(current)
                    throw ToolError.forPath(shown, errno: code, action: "create a directory for")
                }
                next = Paths.tryOpen(current, component, flags: flags, resolve: Paths.beneathNoSymlinks)
            }
            close(current)
            if next < 0 {
                for (fd, _) in created { close(fd) }
                throw ToolError.forPath(shown, errno: -next, action: "write")
            }
            current = next
        }
        return ParentDirectory(fd: current, created: created)
    }

    /// Removes the directories this call created (innermost first) and closes everything.
    func rollback() {
        for (parent, name) in created.reversed() {
            _ = unlinkat(parent, name, AT_REMOVEDIR)
        }
        release()
    }

    func release() {
        for (parent, _) in created { close(parent) }
        close(fd)
    }
}
