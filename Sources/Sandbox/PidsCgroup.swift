import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A per-worker `pids` cgroup, where this host lets the runner make one.
///
/// `RLIMIT_NPROC` bounds a worker's processes when the runner is unprivileged (production), but
/// the kernel exempts processes whose global uid is root from it; a runner started as root
/// therefore also puts each worker in its own cgroup with `pids.max`. cgroup v2 is used when this
/// process's subtree is delegated to it, else the v1 `pids` hierarchy when it is writable.
struct PidsCgroup: Sendable {
    /// The directory new worker cgroups are made in.
    let parent: String

    /// The hierarchy this runner may use, nil when none is writable.
    static func detect() -> PidsCgroup? {
        guard let membership = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        for line in membership.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = fields[2] == "/" ? "" : String(fields[2])
            let base: String
            if fields[0] == "0" && fields[1].isEmpty {
                base = "/sys/fs/cgroup" + path
                guard
                    let controllers = try? String(contentsOfFile: base + "/cgroup.controllers", encoding: .utf8),
                    controllers.split(whereSeparator: \.isWhitespace).contains("pids")
                else { continue }
            } else if fields[1].split(separator: ",").contains("pids") {
                base = "/sys/fs/cgroup/pids" + path
            } else {
                continue
            }
            let shared = base + "/leasehold-workers"
            mkdir(shared, 0o755)
            guard access(shared, W_OK) == 0, FileManager.default.fileExists(atPath: shared + "/cgroup.procs") else {
                continue
            }
            sweep(shared)
            // One subtree per runner process, so a runner can tell its leftovers from a live
            // neighbour's: a runner killed outright (its workers die by PDEATHSIG) leaves empty
            // cgroups, which the next runner on this host removes.
            let parent = shared + "/runner-\(getpid())"
            mkdir(parent, 0o755)
            if access(parent, W_OK) == 0 { return PidsCgroup(parent: parent) }
        }
        return nil
    }

    /// Makes `<parent>/<id>` with `pids.max = limit` and moves `pid` (the worker, before it has
    /// started anything) into it. Returns the directory, or nil when the kernel refused.
    func place(_ pid: pid_t, id: String, limit: Int) -> String? {
        let directory = parent + "/" + id
        guard mkdir(directory, 0o755) == 0 || errno == EEXIST else { return nil }
        guard write("\(max(1, limit))", to: directory + "/pids.max"), write("\(pid)", to: directory + "/cgroup.procs")
        else {
            rmdir(directory)
            return nil
        }
        return directory
    }

    /// Removes the subtrees of runners that are gone (`runner-<pid>` with no such process); a
    /// cgroup that still holds a process refuses rmdir and stays.
    private static func sweep(_ shared: String) {
        guard let runners = try? FileManager.default.contentsOfDirectory(atPath: shared) else { return }
        for runner in runners where runner.hasPrefix("runner-") {
            guard let pid = Int32(runner.dropFirst("runner-".count)), kill(pid, 0) != 0, errno == ESRCH else { continue }
            let directory = shared + "/" + runner
            for worker in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where worker.hasPrefix("wkr_") {
                rmdir(directory + "/" + worker)
            }
            rmdir(directory)
        }
    }

    /// Removes a worker's cgroup once its processes are gone.
    static func remove(_ directory: String) {
        rmdir(directory)
    }

    private func write(_ text: String, to file: String) -> Bool {
        let fd = open(file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return text.utf8CString.withUnsafeBufferPointer { buffer in
            Glibc.write(fd, buffer.baseAddress, buffer.count - 1) == buffer.count - 1
        }
    }
}
