import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Per-worker cgroups: memory, processes and CPU weight of a worker's whole process tree.
///
/// rlimits bound one process each: a `shell.run` of the exec tier could start its 64 processes
/// with 1 GiB each (found in review: 8 × 900 MiB took 7 GiB from the host). A cgroup per worker
/// bounds them together: `memory.max` (v1 `memory.limit_in_bytes`, swap included where the host
/// accounts it), `pids.max`, and a CPU weight. Workers sit under one group per tenant, and tenant
/// groups have equal weights, so under contention CPU is shared by tenant, not by worker count:
///
///     <runner's cgroup>/leasehold-workers/runner-<pid>/tenant-<id>/<worker id>
///
/// cgroup v2 is used when the runner's own group is delegated to it (root, or a systemd unit with
/// `Delegate=yes`); otherwise each v1 hierarchy (`memory`, `pids`, `cpu`) the runner may write.
/// A controller the host does not give the runner is simply absent; ``LimitEnforcement`` says
/// what that means for each tier limit.
public struct WorkerCgroups: Sendable, Hashable {
    /// A controller whose limits a worker group carries.
    public enum Controller: String, Sendable, Hashable, CaseIterable, Comparable {
        case memory, pids, cpu

        public static func < (lhs: Controller, rhs: Controller) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// The cgroup interface version of the hierarchy in use.
    public enum Version: String, Sendable, Hashable {
        case v1, v2
    }

    /// The version in use.
    public let version: Version
    /// The per-runner directory of each controller (v1: one per hierarchy; v2: one for all).
    public let parents: [Controller: String]

    /// The controllers workers get limits from.
    public var controllers: Set<Controller> { Set(parents.keys) }

    /// The weight every tenant group has: equal, so CPU under contention is shared per tenant.
    static let tenantWeight = 100

    // MARK: Finding the hierarchy

    /// One cgroup mount with the runner's place in it.
    struct Hierarchy: Sendable, Hashable {
        var version: Version
        /// Controllers bound to this hierarchy that workers may use (v2: those enabled for the
        /// runner's group, read from its `cgroup.controllers` at detection).
        var controllers: Set<Controller>
        /// The runner's own group, as a directory.
        var directory: String
    }

    /// The hierarchies this process belongs to, from `/proc/self/cgroup` and `/proc/self/mountinfo`
    /// (pure: tested with the texts of hybrid, v2-only and containerized hosts). A group is found
    /// at `<mount point>/<its path relative to the mount's root>`; a group outside what is
    /// mounted here (another cgroup namespace's mount) is skipped.
    static func hierarchies(membership: String, mountinfo: String) -> [Hierarchy] {
        struct Mount {
            var root: String
            var point: String
            var version: Version
            var options: Set<String>
        }
        var mounts: [Mount] = []
        for line in mountinfo.split(separator: "\n") {
            // `id parent major:minor root mountpoint options [optional fields] - fstype source superoptions`
            let halves = line.components(separatedBy: " - ")
            guard halves.count == 2 else { continue }
            let head = halves[0].split(separator: " ")
            let tail = halves[1].split(separator: " ")
            guard head.count >= 5, tail.count >= 3 else { continue }
            let version: Version
            switch tail[0] {
            case "cgroup": version = .v1
            case "cgroup2": version = .v2
            default: continue
            }
            mounts.append(
                Mount(
                    root: unescape(head[3]), point: unescape(head[4]), version: version,
                    options: Set(tail[2].split(separator: ",").map(String.init))))
        }
        var found: [Hierarchy] = []
        for line in membership.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = String(fields[2])
            let isUnified = fields[0] == "0" && fields[1].isEmpty
            let names = Set(fields[1].split(separator: ",").map(String.init))
            let wanted = Set(Controller.allCases.filter { names.contains($0.rawValue) })
            guard isUnified || !wanted.isEmpty else { continue }
            let mount = mounts.first { mount in
                isUnified
                    ? mount.version == .v2
                    : mount.version == .v1 && wanted.allSatisfy { mount.options.contains($0.rawValue) }
            }
            guard let mount, let relative = relativePath(path, under: mount.root) else { continue }
            let directory = mount.point + relative
            found.append(
                Hierarchy(version: isUnified ? .v2 : .v1, controllers: isUnified ? [] : wanted, directory: directory))
        }
        return found
    }

    /// `path` below `root` ("" for the root itself, else with a leading slash); nil when outside.
    static func relativePath(_ path: String, under root: String) -> String? {
        if root == "/" { return path == "/" ? "" : path }
        if path == root { return "" }
        guard path.hasPrefix(root + "/") else { return nil }
        return String(path.dropFirst(root.count))
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    private static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        var iterator = Array(field.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "\\"), iterator.count >= 3,
                let value = UInt8(String(decoding: iterator.prefix(3), as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                iterator = iterator.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The groups this runner may make worker cgroups in, nil when it may make none.
    ///
    /// v2 is preferred when the runner's group is writable and offers at least `memory`; its
    /// controllers are enabled for the subtree (moving the runner itself into a `supervisor` leaf
    /// first when its group holds processes, which v2's "no internal processes" rule requires).
    /// Otherwise every v1 hierarchy of `memory`, `pids` and `cpu` the runner may write is used.
    public static func detect() -> WorkerCgroups? {
        find(
            unified: { directory, controllers in
                let enable = controllers.sorted().map { "+" + $0.rawValue }.joined(separator: " ")
                if !writeFile(enable, to: directory + "/cgroup.subtree_control") {
                    // Our own group holds processes (this runner): move the runner into a leaf of
                    // its own, then the group may hand controllers to its children.
                    guard errno == EBUSY else { return nil }
                    let supervisor = directory + "/supervisor"
                    guard mkdir(supervisor, 0o755) == 0 || errno == EEXIST,
                        writeFile("\(getpid())", to: supervisor + "/cgroup.procs"),
                        writeFile(enable, to: directory + "/cgroup.subtree_control")
                    else { return nil }
                }
                return runnerDirectory(in: directory, enable: enable)
            },
            v1: { runnerDirectory(in: $0, enable: nil) })
    }

    /// What ``detect()`` would use, without making or moving anything (for doctor): the parents
    /// are the `leasehold-workers` groups that would hold the runners' subtrees.
    public static func probe() -> WorkerCgroups? {
        find(
            unified: { directory, _ in directory + "/leasehold-workers" },
            v1: { access($0, W_OK) == 0 ? $0 + "/leasehold-workers" : nil })
    }

    /// The groups of this process: the unified hierarchy when its group is delegated (writable,
    /// offering `memory`), its parent directory from `unified`; else each v1 hierarchy whose
    /// parent `v1` gives.
    private static func find(
        unified: (_ directory: String, _ controllers: Set<Controller>) -> String?, v1: (String) -> String?
    ) -> WorkerCgroups? {
        guard let membership = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
            let mountinfo = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
        else { return nil }
        let found = hierarchies(membership: membership, mountinfo: mountinfo)
        if let group = found.first(where: { $0.version == .v2 })?.directory,
            access(group + "/cgroup.procs", W_OK) == 0, access(group + "/cgroup.subtree_control", W_OK) == 0,
            let offered = readFile(group + "/cgroup.controllers")
        {
            let names = Set(offered.split(whereSeparator: \.isWhitespace).map(String.init))
            let controllers = Set(Controller.allCases.filter { names.contains($0.rawValue) })
            if controllers.contains(.memory), let parent = unified(group, controllers) {
                return WorkerCgroups(version: .v2, parents: Dictionary(uniqueKeysWithValues: controllers.map { ($0, parent) }))
            }
        }
        var parents: [Controller: String] = [:]
        for hierarchy in found where hierarchy.version == .v1 {
            guard let parent = v1(hierarchy.directory) else { continue }
            for controller in hierarchy.controllers { parents[controller] = parent }
        }
        return parents.isEmpty ? nil : WorkerCgroups(version: .v1, parents: parents)
    }

    /// `<group>/leasehold-workers/runner-<pid>`, made writable, after removing what runners that
    /// are gone left there. v2 enables `enable` in each new level's subtree.
    private static func runnerDirectory(in group: String, enable: String?) -> String? {
        let shared = group + "/leasehold-workers"
        guard mkdir(shared, 0o755) == 0 || errno == EEXIST, access(shared, W_OK) == 0,
            FileManager.default.fileExists(atPath: shared + "/cgroup.procs")
        else { return nil }
        if let enable, !writeFile(enable, to: shared + "/cgroup.subtree_control") { return nil }
        sweep(shared)
        // One subtree per runner process, so a runner can tell its leftovers from a live
        // neighbour's: a runner killed outright (its workers die by PDEATHSIG) leaves empty
        // cgroups, which the next runner on this host removes.
        let parent = shared + "/runner-\(getpid())"
        guard mkdir(parent, 0o755) == 0 || errno == EEXIST, access(parent, W_OK) == 0 else { return nil }
        if let enable, !writeFile(enable, to: parent + "/cgroup.subtree_control") { return nil }
        return parent
    }

    /// Removes the subtrees of runners that are gone (`runner-<pid>` with no such process),
    /// depth first, waiting a little for workers of a runner killed just now, which die by
    /// PDEATHSIG meanwhile; a cgroup that still holds a process after that stays.
    private static func sweep(_ shared: String) {
        guard let runners = try? FileManager.default.contentsOfDirectory(atPath: shared) else { return }
        let deadline = ContinuousClock.now + dyingProcessesPatience
        for runner in runners where runner.hasPrefix("runner-") {
            guard let pid = Int32(runner.dropFirst("runner-".count)), kill(pid, 0) != 0, errno == ESRCH else {
                continue
            }
            removeTree(shared + "/" + runner, until: deadline)
        }
    }

    /// Removes this runner's `runner-<pid>` groups at a clean stop, after its workers were killed
    /// (a group whose process outlives the patience stays for the next runner's sweep). Without
    /// it every clean stop left its empty groups until the next runner on the host started. Only
    /// the runner calls it: other pools of the same process (tests) share the directories.
    public func removeRunnerGroups() {
        let deadline = ContinuousClock.now + Self.dyingProcessesPatience
        for parent in Set(parents.values) { Self.removeTree(parent, until: deadline) }
    }

    /// How long removing groups waits for the processes in them to finish dying.
    ///
    /// A killed worker leaves its group only when the kernel has finished its exit, and until
    /// then its group and every group above it refuse rmdir (EBUSY). The pool kills its workers at
    /// shutdown without waiting for them to be reaped, and a killed runner's workers die by
    /// PDEATHSIG while the next runner starts: found by the fault test, where a clean stop that
    /// gave up at the first EBUSY left `runner-<pid>` behind about one stop in three on a busy host.
    static let dyingProcessesPatience: Duration = .seconds(5)

    /// rmdir of a cgroup directory and the groups below it (their files are the kernel's), each
    /// retried while it is busy (its processes still exiting) until `deadline`, then left.
    static func removeTree(_ directory: String, until deadline: ContinuousClock.Instant) {
        for child in subgroups(of: directory) { removeTree(directory + "/" + child, until: deadline) }
        while rmdir(directory) != 0, errno == EBUSY, ContinuousClock.now < deadline {
            usleep(10_000)
        }
    }

    private static func subgroups(of directory: String) -> [String] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
        return entries.filter { entry in
            var status = stat()
            return lstat(directory + "/" + entry, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
        }
    }

    // MARK: Placing a worker

    /// What one worker group limits.
    public struct Limits: Sendable, Hashable {
        /// Memory of the whole tree, MiB (swap included where the host accounts swap).
        public var memoryMiB: Int
        /// Processes and threads of the whole tree.
        public var processes: Int
        /// CPU weight relative to the tenant's other workers (cgroup v2 scale 1-10000, 100 the default).
        public var cpuWeight: Int

        /// Creates limits.
        public init(memoryMiB: Int, processes: Int, cpuWeight: Int) {
            self.memoryMiB = memoryMiB
            self.processes = processes
            self.cpuWeight = cpuWeight
        }
    }

    /// A worker's groups: removed once it has been reaped.
    public struct Placement: Sendable, Hashable {
        /// The worker's group in each hierarchy used (one for v2).
        public var directories: [String]
        /// Its memory group, whose OOM kills tell that the memory limit stopped it.
        public var memory: String?
        /// The version, which decides where the kernel counts OOM kills.
        public var version: Version

        /// How many processes of the group the kernel has killed for memory so far.
        public func oomKills() -> Int {
            guard let memory else { return 0 }
            // v1 counts them in `memory.oom_control`, v2 in `memory.events` (both since 4.13).
            let file = memory + (version == .v2 ? "/memory.events" : "/memory.oom_control")
            guard let text = WorkerCgroups.readFile(file) else { return 0 }
            for line in text.split(separator: "\n") where line.hasPrefix("oom_kill ") {
                return Int(line.dropFirst("oom_kill ".count)) ?? 0
            }
            return 0
        }

        /// Removes the worker's groups (and its tenant's, when that was its last worker).
        public func remove() {
            for directory in directories {
                rmdir(directory)
                rmdir((directory as NSString).deletingLastPathComponent)
            }
        }
    }

    /// Makes the worker's group under its tenant's in every hierarchy, writes the limits, and
    /// moves `pid` (the worker, before it has read anything, so before it can start a process)
    /// into it. Nil (with errno set) when the kernel refused; nothing is left behind then.
    public func place(_ pid: pid_t, worker id: String, tenant: String, limits: Limits) -> Placement? {
        var made: [String] = []
        var placement = Placement(directories: [], memory: nil, version: version)
        let byParent = Dictionary(grouping: parents.keys, by: { parents[$0]! })
        for (parent, controllers) in byParent.sorted(by: { $0.key < $1.key }) {
            guard let directory = makeGroup(parent: parent, tenant: tenant, worker: id, controllers: Set(controllers))
            else {
                let saved = errno
                Placement(directories: made, memory: nil, version: version).remove()
                errno = saved
                return nil
            }
            made.append(directory)
            if controllers.contains(.memory) { placement.memory = directory }
            guard write(limits, for: Set(controllers), to: directory) else {
                let saved = errno
                Placement(directories: made, memory: nil, version: version).remove()
                errno = saved
                return nil
            }
        }
        // Limits first, then the move: the worker is never in a group without its limits.
        for directory in made where !Self.writeFile("\(pid)", to: directory + "/cgroup.procs") {
            let saved = errno
            Placement(directories: made, memory: nil, version: version).remove()
            errno = saved
            return nil
        }
        placement.directories = made
        return placement
    }

    /// `<parent>/tenant-<id>/<worker>`; the tenant group is made (with its equal CPU weight) on
    /// first use. A neighbour that removed the empty tenant group in between is tried once more.
    private func makeGroup(parent: String, tenant: String, worker: String, controllers: Set<Controller>) -> String? {
        let tenantGroup = parent + "/tenant-" + Self.groupName(tenant)
        for _ in 0..<2 {
            if mkdir(tenantGroup, 0o755) == 0 {
                if controllers.contains(.cpu) {
                    let weight = version == .v2 ? "\(Self.tenantWeight)" : "\(Self.shares(weight: Self.tenantWeight))"
                    _ = Self.writeFile(weight, to: tenantGroup + (version == .v2 ? "/cpu.weight" : "/cpu.shares"))
                }
                if version == .v2 {
                    let enable = controllers.sorted().map { "+" + $0.rawValue }.joined(separator: " ")
                    guard Self.writeFile(enable, to: tenantGroup + "/cgroup.subtree_control") else { return nil }
                }
            } else if errno != EEXIST {
                return nil
            }
            let directory = tenantGroup + "/" + worker
            if mkdir(directory, 0o755) == 0 || errno == EEXIST { return directory }
            guard errno == ENOENT else { return nil }
        }
        return nil
    }

    private func write(_ limits: Limits, for controllers: Set<Controller>, to directory: String) -> Bool {
        let bytes = Int64(max(1, limits.memoryMiB)) << 20
        for controller in controllers.sorted() {
            switch (controller, version) {
            case (.memory, .v1):
                guard Self.writeFile("\(bytes)", to: directory + "/memory.limit_in_bytes") else { return false }
                // Memory plus swap, where the host accounts swap: the limit is not evaded by swapping.
                let swap = directory + "/memory.memsw.limit_in_bytes"
                if access(swap, F_OK) == 0, !Self.writeFile("\(bytes)", to: swap) { return false }
            case (.memory, .v2):
                guard Self.writeFile("\(bytes)", to: directory + "/memory.max") else { return false }
                let swap = directory + "/memory.swap.max"
                if access(swap, F_OK) == 0, !Self.writeFile("0", to: swap) { return false }
                // An OOM kill takes the whole worker, not one process of a command that goes on.
                _ = Self.writeFile("1", to: directory + "/memory.oom.group")
            case (.pids, _):
                guard Self.writeFile("\(max(1, limits.processes))", to: directory + "/pids.max") else { return false }
            case (.cpu, .v1):
                guard Self.writeFile("\(Self.shares(weight: limits.cpuWeight))", to: directory + "/cpu.shares") else {
                    return false
                }
            case (.cpu, .v2):
                guard Self.writeFile("\(min(10_000, max(1, limits.cpuWeight)))", to: directory + "/cpu.weight") else {
                    return false
                }
            }
        }
        return true
    }

    /// v1 `cpu.shares` for a v2-scale weight (100 is 1024, the default of both).
    static func shares(weight: Int) -> Int { max(2, min(10_000, max(1, weight)) * 1024 / 100) }

    /// A tenant id as one path component: kept when it is plain, else `hex.` and its bytes in hex
    /// (a `.` is never plain), so no id can name another directory or another tenant's group.
    static func groupName(_ tenant: String) -> String {
        let plain =
            !tenant.isEmpty && tenant.utf8.count <= 128
            && tenant.utf8.allSatisfy { byte in
                (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                    || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            }
        return plain ? tenant : "hex." + tenant.utf8.map { String(format: "%02x", $0) }.joined()
    }

    // MARK: Files

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// One write(2) of `text`; cgroup files take a value per write. errno says why on false.
    static func writeFile(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer {
            let saved = errno
            close(fd)
            errno = saved
        }
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count
    }
}
