import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Which runners serve an audit log right now, and from which record on: what tells a call still
/// running from one whose outcome will never be written.
///
/// A serving runner holds an exclusive `flock` on `<state dir>/audit-runners/<seq>-<id>.lock`, where
/// `seq` is the log's head when the runner opened it. The kernel drops the lock however the process
/// ends (`kill -9` included), so a lock file whose lock can be taken belongs to a runner that is gone;
/// the next runner to start deletes it. An intent after the smallest `seq` of a live runner may be
/// one of that runner's calls in flight; an intent at or before it, with no outcome, cannot be.
///
/// `flock` rather than a pid file: a pid is reused after a crash, a lock is not held by a dead
/// process. Foundation has no file-lock call, hence Glibc.
enum AuditRunnerPresence {
    static let directoryName = "audit-runners"

    static func directory(forLog path: String) -> String {
        (path as NSString).deletingLastPathComponent + "/" + directoryName
    }

    /// Announces this process as serving the log at `logPath` from record `seq` on. Returns the
    /// descriptor holding the lock (close-on-exec, so no worker inherits it) and the lock file;
    /// closing it ends the announcement, and so does the process's end.
    static func announce(logPath: String, from seq: Int64) throws -> (fd: Int32, path: String) {
        let directory = directory(forLog: logPath)
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        removeStale(in: directory)
        let id = UUID().uuidString.lowercased()
        // Locked under a name nobody looks at, then renamed into place: a runner cleaning up stale
        // files never sees this one unlocked.
        let temporary = directory + "/.\(seq)-\(id).tmp"
        let fd = open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ConfigError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let path = directory + "/\(seq)-\(id).lock"
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, rename(temporary, path) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            unlink(temporary)
            throw ConfigError("cannot announce the runner in \(directory): \(message)")
        }
        return (fd, path)
    }

    /// The smallest record a live runner announced, or nil when no runner serves the log.
    static func liveFrom(logPath: String) -> Int64? {
        var lowest: Int64?
        for (seq, path) in lockFiles(in: directory(forLog: logPath)) {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            if flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK {
                lowest = min(lowest ?? seq, seq)
            }
        }
        return lowest
    }

    /// Deletes the lock files of runners that are gone.
    private static func removeStale(in directory: String) {
        for (_, path) in lockFiles(in: directory) {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { unlink(path) }
            close(fd)
        }
    }

    private static func lockFiles(in directory: String) -> [(seq: Int64, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name in
            guard name.hasSuffix(".lock"), let dash = name.firstIndex(of: "-"), let seq = Int64(name[..<dash]) else {
                return nil
            }
            return (seq, directory + "/" + name)
        }
    }
}

extension AuditLog {
    /// Marks this process as a runner serving the log, until it exits (see ``AuditRunnerPresence``):
    /// `leasehold audit verify` and the audit API then report this runner's calls without an
    /// outcome record as in flight rather than as outcome unknown.
    ///
    /// On PostgreSQL the announcement is a row of `audit_runners` tied to this node's writer
    /// connection (see ``AuditPostgres/announce(node:from:)``), seen by every node.
    public nonisolated func announceRunner() throws {
        if let postgres {
            try postgres.announce(node: node, from: openedAtSeq)
            return
        }
        let announced = try AuditRunnerPresence.announce(logPath: path, from: openedAtSeq)
        let previous = presence.withLock { held in
            defer { held = announced }
            return held
        }
        if let previous { close(previous.fd) }
    }

    /// Ends the announcement at a clean stop: deletes the lock file while still holding its lock (so
    /// no runner starting meanwhile sees it unlocked), then closes it. Without this every clean
    /// stop left one file behind until the next start; a killed runner's is still deleted by the
    /// next runner to start.
    public nonisolated func retireRunner() {
        if let postgres {
            postgres.retire()
            return
        }
        let held = presence.withLock { held in
            defer { held = nil }
            return held
        }
        guard let held else { return }
        unlink(held.path)
        close(held.fd)
    }

    /// The line between calls in flight and outcomes unknown: intents after it may still be
    /// running. The smallest start of a live runner, and never after this log's own start (a log
    /// opened by `verify` treats everything before it as at rest unless a runner is live).
    nonisolated func inFlightBoundary() -> Int64 {
        min(openedAtSeq, AuditRunnerPresence.liveFrom(logPath: path) ?? .max)
    }
}
