import CWorker

#if canImport(Glibc)
    import Glibc
#endif

/// One name read from a directory.
struct DirectoryEntry {
    /// The raw name bytes (no NUL): names need not be UTF-8 and are reopened exactly as read.
    let name: [UInt8]
    /// d_type (DT_REG, DT_DIR, DT_LNK, ..., or DT_UNKNOWN).
    let type: UInt8

    /// The name for results; invalid UTF-8 is replaced, which is fine for display only.
    var display: String { String(decoding: name, as: UTF8.self) }

    /// Calls `body` with the name as a C string (names from readdir never hold a NUL).
    func withCName<R>(_ body: (UnsafePointer<CChar>) -> R) -> R {
        (name + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) }
        }
    }
}

/// Reads directories through descriptors the kernel resolved; never looks anything up by path.
enum DirectoryReader {
    /// The entries of the directory open at `fd` (left open for the *at calls on its children),
    /// `.` and `..` left out, sorted by name bytes so every listing and search is in a stable order.
    static func entries(of fd: Int32) -> [DirectoryEntry]? {
        // fdopendir takes ownership of its descriptor: give it a duplicate.
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard copy >= 0 else { return nil }
        guard let dir = fdopendir(copy) else {
            close(copy)
            return nil
        }
        defer { closedir(dir) }
        var result: [DirectoryEntry] = []
        while let entry = readdir(dir) {
            let name: [UInt8] = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: UInt8.self, capacity: 256) { bytes in
                    Array(UnsafeBufferPointer(start: bytes, count: strlen(UnsafeRawPointer(bytes).assumingMemoryBound(to: CChar.self))))
                }
            }
            if name == [0x2E] || name == [0x2E, 0x2E] { continue }
            result.append(DirectoryEntry(name: name, type: entry.pointee.d_type))
        }
        result.sort { $0.name.lexicographicallyPrecedes($1.name) }
        return result
    }

    /// Opens child directory `entry` of `dirfd` for reading, refusing any symlink.
    static func openChildDirectory(_ dirfd: Int32, _ entry: DirectoryEntry) -> Int32 {
        entry.withCName { name in
            csbwOpen(dirfd, name, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        }
    }

    /// Opens child file `entry` of `dirfd` for reading (non-blocking: a FIFO swapped in never hangs).
    static func openChildFile(_ dirfd: Int32, _ entry: DirectoryEntry) -> Int32 {
        entry.withCName { name in
            csbwOpen(dirfd, name, flags: O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW)
        }
    }

    /// openat2 of one name read from `dirfd`: beneath it, no symlink anywhere, no magic links.
    private static func csbwOpen(_ dirfd: Int32, _ name: UnsafePointer<CChar>, flags: Int32) -> Int32 {
        csbw_openat2(dirfd, name, UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), 0, Paths.beneathNoSymlinks)
    }

    /// lstat of child `entry`.
    static func statChild(_ dirfd: Int32, _ entry: DirectoryEntry) -> stat? {
        var st = stat()
        let rc = entry.withCName { fstatat(dirfd, $0, &st, AT_SYMLINK_NOFOLLOW) }
        return rc == 0 ? st : nil
    }
}
