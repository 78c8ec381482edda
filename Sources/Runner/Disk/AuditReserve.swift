import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Space held for the audit log on its own filesystem: a "ballast" file in the state directory
/// whose blocks are really allocated (`posix_fallocate`), released the moment that filesystem is
/// full, so the audit log (fail closed: no record, no call) keeps taking records when a tenant's
/// exec call has filled a filesystem it shares with the state directory. While it is released,
/// nothing on that filesystem may grow (``DiskLedger``); it is allocated again once the free space
/// is back above twice its size.
///
/// The real fix is a separate filesystem for the state directory (`leasehold doctor` says whether
/// it shares one with the workspace bases); the reserve is what keeps a shared one alive.
public final class AuditReserve: Sendable {
    /// The ballast file.
    public let path: String
    /// Its size (0: no reserve).
    public let bytes: Int64
    /// The device of the state directory (`st_dev`).
    public let device: UInt64
    /// The directory whose filesystem is watched.
    let directory: String
    private let state = Mutex<State>(.released)

    enum State: Equatable {
        case inPlace
        case released
    }

    /// What changed, for the audit trail.
    public enum Change: Sendable, Equatable {
        case released(freeBytes: Int64)
        case restored(freeBytes: Int64)
    }

    /// Below this much free space the filesystem counts as full and the reserve is released.
    public var lowWater: Int64 { min(bytes / 4, 1 << 20) }

    /// A reserve of `bytes` in `stateDirectory` (not yet allocated: ``allocate()``).
    public init(stateDirectory: String, bytes: Int64) {
        directory = stateDirectory
        path = stateDirectory + "/audit-reserve"
        self.bytes = max(0, bytes)
        var st = stat()
        device = stat(stateDirectory, &st) == 0 ? UInt64(st.st_dev) : 0
    }

    /// Whether the reserve is allocated.
    public var isInPlace: Bool { state.withLock { $0 == .inPlace } }

    /// Whether a reserve is configured and released: its filesystem ran full.
    public var isReleased: Bool { bytes > 0 && state.withLock { $0 == .released } }

    /// Free bytes on the state directory's filesystem for an unprivileged writer (`f_bavail`).
    public func freeBytes() -> Int64? {
        var fs = statvfs()
        guard statvfs(directory, &fs) == 0 else { return nil }
        return Int64(fs.f_bavail) * Int64(fs.f_frsize)
    }

    /// Allocates the ballast (at `serve` start, and when space is back). A file left by an earlier
    /// run that is already allocated is kept. Returns false when the space is not there.
    @discardableResult
    public func allocate() -> Bool {
        guard bytes > 0 else { return false }
        return state.withLock { state in
            var st = stat()
            if lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Int64(st.st_blocks) * 512 >= bytes {
                state = .inPlace
                return true
            }
            let fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { return false }
            let failed = posix_fallocate(fd, 0, off_t(bytes))
            close(fd)
            guard failed == 0 else {
                unlink(path)
                state = .released
                return false
            }
            state = .inPlace
            return true
        }
    }

    /// Frees the ballast; true when it was in place (the caller then has room to write again).
    @discardableResult
    public func release() -> Bool {
        guard bytes > 0 else { return false }
        return state.withLock { state in
            guard state == .inPlace else { return false }
            state = .released
            unlink(path)
            return true
        }
    }

    /// Releases the reserve when its filesystem is (nearly) full, or allocates it again when the
    /// free space is back above twice its size; what changed, if anything.
    public func rebalance() -> Change? {
        guard bytes > 0, let free = freeBytes() else { return nil }
        if isInPlace {
            guard free < lowWater, release() else { return nil }
            return .released(freeBytes: freeBytes() ?? free)
        }
        guard free >= 2 * bytes, allocate() else { return nil }
        return .restored(freeBytes: freeBytes() ?? free)
    }
}
