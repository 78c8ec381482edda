/// Which of a tier's limits this runner can hold on a worker's whole process tree, and how.
///
/// Wall clock, CPU seconds, file size, output bytes and descriptors are enforced everywhere
/// (the runner's timer, rlimits, the runner's byte cap). Three limits are about the whole worker
/// and depend on the host:
///
/// | limit | enforced by |
/// |---|---|
/// | `memory_mib` | the worker's memory cgroup; without one, only for a tier of one process (its address-space rlimit, with `/tmp` a bounded tmpfs) |
/// | `processes` | the worker's pids cgroup, else `RLIMIT_NPROC`, counted per worker user namespace (workers never run as host root) |
/// | `cpu_weight` | the worker's cpu cgroup (a tier without `cpu_weight` asks for none) |
///
/// A tier whose limit has no mechanism here does not run unless the tier lists that limit under
/// `best_effort`, which the security team chooses in the policy file and every spawn records.
public struct LimitEnforcement: Sendable, Hashable {
    /// The limits whose enforcement depends on the host, by their policy names.
    public static let hostDependentLimits = ["memory_mib", "processes", "cpu_weight"]

    /// The worker cgroups in use, nil when there are none.
    public var cgroups: WorkerCgroups?
    /// False for an executor that starts no processes (tests' in-process executors): nothing of
    /// a tier's limits is at stake there.
    public var runsProcesses = true

    /// Creates the description for a runner using `cgroups`.
    public init(cgroups: WorkerCgroups?) {
        self.cgroups = cgroups
    }

    /// An executor that starts no processes.
    public static let inProcess: LimitEnforcement = {
        var enforcement = LimitEnforcement(cgroups: nil)
        enforcement.runsProcesses = false
        return enforcement
    }()

    /// How `limit` is held for workers with `limits` here, nil when it is not.
    public func mechanism(_ limit: String, for limits: WorkerLimits) -> String? {
        guard runsProcesses else { return "no processes are started" }
        let controllers = cgroups?.controllers ?? []
        let version = cgroups?.version.rawValue ?? ""
        switch limit {
        case "memory_mib":
            if controllers.contains(.memory) { return "memory cgroup (\(version)) of the whole worker" }
            return limits.processes <= 1 ? "address-space rlimit of its one process" : nil
        case "processes":
            if controllers.contains(.pids) { return "pids cgroup (\(version)) of the whole worker" }
            return "RLIMIT_NPROC in the worker's user namespace"
        case "cpu_weight":
            guard limits.cpuWeight != nil else { return "not set" }
            return controllers.contains(.cpu) ? "cpu cgroup (\(version)) weight" : nil
        default:
            return nil
        }
    }

    /// The host-dependent limits of `tier` that cannot be enforced here and that it does not
    /// accept as best-effort: the tier must not run while any is left.
    public func unenforceable(_ tier: WorkerTier) -> [String] {
        Self.hostDependentLimits.filter { mechanism($0, for: tier.limits) == nil && !tier.bestEffort.contains($0) }
    }

    /// The limits of `tier` that run unenforced because the tier accepts them as best-effort.
    public func bestEffortInEffect(_ tier: WorkerTier) -> [String] {
        Self.hostDependentLimits.filter { mechanism($0, for: tier.limits) == nil && tier.bestEffort.contains($0) }
    }
}
